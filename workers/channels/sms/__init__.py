"""SMS channels, one module per provider (Aliyun, Tencent, Twilio) over :mod:`.common`."""
