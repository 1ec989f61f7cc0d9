"""Scale-up retraining (``nas-train``): evaluation networks built from a genotype, their training
loop, and their size figures. ``nas.train.task.run_train`` is the entry point for code; the
modules are imported on use so that the command line starts fast.
"""
