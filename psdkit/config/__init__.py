"""Typed plugin configs and recipe loading."""

from psdkit.config.schema import Schedule, build_config, config_to_dict, field_docs, knob

__all__ = ["Schedule", "build_config", "config_to_dict", "field_docs", "knob"]
