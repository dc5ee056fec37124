"""ULMR's building blocks (Shi et al., EMNLP 2024 Industry Track); the method itself is
``obliviate.methods.ulmr`` (registered as ``ulmr``; run it with ``obliviate ulmr run``).

* ``prompts``     the paper's rewrite and negative prompts, verbatim
* ``generators``  who writes rewrites / negative responses: templates, an HF model, an OpenAI-compatible endpoint
* ``restructure`` build, cache and reload the restructured forget set D_fr (inspectable, editable)
* ``merge``       parameter averaging θ_u = α·θ + (1−α)·θ' (in memory or checkpoint to checkpoint)
* ``sweep``       write and evaluate several α (``obliviate merge --alpha 0,0.5,1``)
* ``evaluate``    TOFU metrics of QA splits for the ULMR / guardrail table

See docs/ulmr.md.
"""
