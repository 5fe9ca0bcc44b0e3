"""Purchase predictions: will a customer buy again, how often, and what are they worth.

The BG/NBD model (:mod:`.bgnbd`) and the Gamma-Gamma spend model (:mod:`.gammagamma`)
fitted by maximum likelihood on every buyer's purchase days (:mod:`.summary`, one SQL
aggregate), kept per fit (:mod:`.fitting`) and checked on a holdout period
(:mod:`.holdout`). docs/predictions.md explains the models, their assumptions and how to
read the check.
"""
