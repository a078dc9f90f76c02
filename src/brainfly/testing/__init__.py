"""brainfly.testing: the conformance suite every engine must pass, shipped with the package."""
