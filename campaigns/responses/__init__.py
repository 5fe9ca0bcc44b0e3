"""What customers answer: receipts, clicks, replies, bounces (DSN) and opt-outs, recorded once each."""
