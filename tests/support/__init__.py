"""Helpers the tests share (not tests themselves): paths, cards, the server harness,
client payloads, SillyTavern's prompt layout, exactness references."""
