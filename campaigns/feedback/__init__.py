"""Feedback: survey scores, reply classification and staff alerts.

Surveys and their scores (one per delivery), the classification of inbound replies that
are not opt-outs into question, complaint, positive or other, and the ledger of alerts to
staff channels about detractors and complaints. Pure domain code: the worker sends the
alerts.
"""
