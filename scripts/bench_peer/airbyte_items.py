"""The fake items API as an Airbyte low-code (declarative YAML) source: the second peer of
`ivory-bench peer`. The manifest is `items_manifest.yaml` beside this file; this is what the
CDK's `source-declarative-manifest` does for a local manifest.

usage: airbyte_items.py read --config CONFIG --catalog CATALOG
"""

import os
import sys

from airbyte_cdk.entrypoint import AirbyteEntrypoint, launch
from airbyte_cdk.sources.declarative.yaml_declarative_source import YamlDeclarativeSource

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    args = sys.argv[1:]
    parsed = AirbyteEntrypoint.parse_args(args)
    config = YamlDeclarativeSource.read_config(parsed.config)
    catalog = YamlDeclarativeSource.read_catalog(parsed.catalog)
    source = YamlDeclarativeSource(
        path_to_yaml=os.path.join(HERE, "items_manifest.yaml"),
        catalog=catalog,
        config=config,
        state=[],
        config_path=parsed.config,
    )
    launch(source, args)


if __name__ == "__main__":
    main()
