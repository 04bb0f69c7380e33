"""Model: the 3D U-Net backbone and its heads, the random initialisations, reading released
weight files, and transferring pretrained weights into a target model. Imports nothing of
the layers above it.
"""
