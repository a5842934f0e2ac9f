"""The zoo: ``params.yaml`` zoo entries, timm's registry as zoo entries, and the import of the
original CNN Filter DB."""
