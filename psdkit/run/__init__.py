"""Running a recipe: building components, training, evaluating and exporting."""
