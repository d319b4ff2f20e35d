"""The catalog service: lists products and holds their stock for orders."""
