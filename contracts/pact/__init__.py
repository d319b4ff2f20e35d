"""Pact glue shared by every kind of pact: where pacts live, how they are written, states.

- `files`: pact files are staged per test run, then published into `contracts/pacts/`
  normalised (sorted keys and interactions), so a rerun is byte-identical.
- `proto3`: matchers for proto3 JSON (int64 as strings, RFC 3339 timestamps, enum names).
- `states`: the provider-state server whose answers feed Pact's provider-state generators.
- `verify`: runs pact-python's Verifier and returns its plain-text report.
- `grpc`: V4 synchronous-message pacts for unary gRPC calls, without the protobuf plugin.
"""
