"""The bottom layer: errors, the label scheme, column names and atomic output files.

Imports nothing else from `helpers`; every other layer may import it.
"""
