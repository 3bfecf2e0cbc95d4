"""A minimal Singer SDK tap for the fake items API (`GET /v1/items`, Stripe-style
`limit` + `starting_after`, `{data, has_more}`): the peer of `ivory-bench peer`.

Written the way the Singer SDK cookbook writes a REST tap: a RESTStream with a schema, a
records JSONPath and a paginator that continues after the last item's id.
"""

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.streams import RESTStream


class StartingAfterPaginator(BaseAPIPaginator):
    """Stripe-style: the next page starts after the last item of this one."""

    def __init__(self):
        super().__init__(None)

    def get_next(self, response):
        body = response.json()
        if body.get("has_more") and body.get("data"):
            return body["data"][-1]["id"]
        return None


class ItemsStream(RESTStream):
    name = "items"
    path = "/v1/items"
    primary_keys = ("id",)
    replication_key = None
    records_jsonpath = "$.data[*]"
    schema = th.PropertiesList(
        th.Property("id", th.StringType, required=True),
        th.Property("object", th.StringType),
        th.Property("updated", th.IntegerType),
        th.Property("amount", th.IntegerType),
        th.Property("currency", th.StringType),
        th.Property("note", th.StringType),
    ).to_dict()

    @property
    def url_base(self):
        return self.config["base_url"]

    def get_new_paginator(self):
        return StartingAfterPaginator()

    def get_url_params(self, context, next_page_token):
        params = {"limit": 100}
        if next_page_token:
            params["starting_after"] = next_page_token
        return params


class TapItems(Tap):
    name = "tap-items"
    config_jsonschema = th.PropertiesList(
        th.Property("base_url", th.StringType, required=True),
    ).to_dict()

    def discover_streams(self):
        return [ItemsStream(self)]


if __name__ == "__main__":
    TapItems.cli()
