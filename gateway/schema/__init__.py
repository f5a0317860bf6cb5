"""The JSON bodies of the gateway's APIs as typed models, and the OpenAPI document they make."""
