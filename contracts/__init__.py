"""The contracts' Python side: Avro schemas and their codec, compatibility gates, pact glue."""
