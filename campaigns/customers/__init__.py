"""Who the customers are: importing, recorded events, profile facts (stage, RFM),
addresses, time zones, masking of personal data in logs, and forgetting a customer."""
