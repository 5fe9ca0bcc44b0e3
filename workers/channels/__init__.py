"""Delivery channels, one module per provider (``sms/`` and ``wechat/`` hold one per
provider of the family), built from config by :mod:`.registry`."""
