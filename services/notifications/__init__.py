"""The notifications service: shows users the messages the shop sent them (read side)."""
