"""The verdict attached to the image: `check --attach`, a promotion, and `ociboot verdicts`.

statement  the in-toto Statement v1 / test-result v0.1 predicate: made from a check, read back
referrer   the OCI 1.1 referrer manifest and the referrers list (tag schema index)
attach     push a verdict as a referrer of the checked digest
listing    list, verify and order the verdicts of a digest; the gate's answer
"""
