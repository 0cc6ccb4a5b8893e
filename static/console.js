/* Keyboard shortcuts and small console behaviours for agents; loaded on every agent page. */
