"""Datasets (paper §3.1): the TAU Urban Acoustic Scenes 2020 Mobile reader and the feature cache."""
