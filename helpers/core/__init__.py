"""The bottom layer: errors (`errors`), the parameter-check vocabulary (`checks`), the label scheme
(`labels`), column names and score sources (`columns`), atomic output files (`atomic`), reading
step files (`files`), code and file fingerprints (`fingerprints`) and the project root (`paths`).

Imports nothing else from `helpers`; every other layer may import it.
"""
