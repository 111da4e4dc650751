"""The backtest: trace replay through the emulated platform, baselines, the oracle and the
report.
"""
