"""Card-points domain: accounts, ledger entries, deductions and the rules between them."""
