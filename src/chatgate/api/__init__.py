"""HTTP: native /v1 routes, inbound /in, seed-compatible facades, auth and error mapping."""
