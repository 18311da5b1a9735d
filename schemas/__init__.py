"""pandera schemas for modelwatch's frames."""
