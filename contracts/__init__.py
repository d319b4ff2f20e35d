"""The contracts' Python side: the descriptor-set reader, Avro schemas and their codec,
compatibility gates, pact glue."""
