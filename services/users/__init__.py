"""The users service: registers customers and looks them up."""
