"""The platform edge: the management API client, its models, and the metrics-feed path
(fetch, parse, reduce to samples, time-indexed windows).
"""
