"""Custody: hot / warm / cold wallets, signed multi-party withdrawals, the chain adapter.

Wiring (see ``Custody``): ``Custody(engine, chain, CoreLedger(core_submit, stage.ledger),
RegistryDirectory(engine), WalletSigner(engine, passphrases))``; call ``setup()``,
``wallets.setup_wallets(...)``, ``set_policy(...)`` once, then ``process(now)`` periodically.
"""
