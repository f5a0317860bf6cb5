"""The streaming reverse proxy core: requests relayed upstream and answers back, WebSockets too."""
