"""Configuration: the settings, the config file's accounts and instances, shards, and the one bounded YAML loader.

A leaf above the API (it names regions, endpoints and credential sources) and below everything that
polls, renders or serves: nothing here imports collect, metrics, web or runtime.
"""
