"""The platform keeps no tables of its own; this module makes Django send it post_migrate."""
