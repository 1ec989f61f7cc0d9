"""Where the stacked networks (search and evaluation alike) put their reduction cells."""


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Cells at a third and two thirds of the depth halve the resolution and double the channels."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))
