"""Config schema, loading (``_base_`` + overrides) and dumping."""

from vipseg.config.loader import config_from_yaml_text, dump_config, load_config
from vipseg.config.schema import Config

__all__ = ["Config", "load_config", "dump_config", "config_from_yaml_text"]
