"""sculpt's CrossGuard policy pack (``pulumi preview --policy-pack policies``); the policies live in ``pack``."""
