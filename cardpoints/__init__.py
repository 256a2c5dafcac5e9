"""The bank's card-points service: accounts, a points ledger, deductions, reversals."""
