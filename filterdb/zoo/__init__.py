"""The zoo: ``params.yaml`` zoo entries, timm's registry as zoo entries, the import of the
original CNN Filter DB, and the label table the last two share."""
