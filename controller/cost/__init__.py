"""Money: the price table and book, periods and forecasts, quota accounting, budget levels and
the spend ledger.
"""
