"""The user's project as a whole: config.toml cross-checked against what it names
(segment expressions, templates, policies), as ``nurture check`` reports it. The top of
the domain, because those checks use the audience language and the renderer."""
