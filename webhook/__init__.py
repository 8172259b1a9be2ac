"""The admission webhook: checks Tasks and submits them to the FN at CREATE."""
