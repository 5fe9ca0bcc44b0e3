"""Who a campaign targets: the audience expression language and the selection it compiles to."""
