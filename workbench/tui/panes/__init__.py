"""The panes of the main tabs: Recipes, Runs, Compare."""
