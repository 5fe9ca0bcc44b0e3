"""One person across the systems that feed nurture: identifiers, matching, merging.

* :mod:`~campaigns.customers.identity.identifiers`: the normal form of each identifier
  kind, and references (``phone:+86...``) to a customer.
* :mod:`~campaigns.customers.identity.lookup`: which customer holds an identifier.
* :mod:`~campaigns.customers.identity.resolution`: an import batch's rows to customers, set
  based: create, update, merge on a strong match, review on a weak one.
* :mod:`~campaigns.customers.identity.merging`: one customer into another in one
  transaction, recorded so that :func:`unmerge` puts every row back.
* :mod:`~campaigns.customers.identity.review`: weak matches waiting for a decision.
"""
