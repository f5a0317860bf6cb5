"""The Xero listener: api.xero.com's paths for the app's backend, under the gateway's custody."""
