"""Checks that a search finds what it should: recovery of a planted cell, searched against random."""
