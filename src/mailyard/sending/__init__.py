"""Sending limits of regular users: messages and recipients per hour and per day."""
