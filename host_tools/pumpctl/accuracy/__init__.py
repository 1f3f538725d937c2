"""IEC 60601-2-24 accuracy measurement: balances, gravimetric runs, trumpet-curve analysis, reports."""
