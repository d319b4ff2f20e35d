"""The Python client of the REST gateway (`shop_client`)."""
