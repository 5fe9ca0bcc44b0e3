"""WeChat channels: the WeCom group robot and the Official Account, over :mod:`.common`."""
