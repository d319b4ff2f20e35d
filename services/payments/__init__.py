"""The payments service: charges and refunds customers, safely under retries."""
