// Imported first by main.ts, before anything loads `node:sqlite`: Node 22 announces SQLite (which the
// migration journal uses) with an ExperimentalWarning on stderr, which would be noise in every command's
// output. Other warnings still show.
process.removeAllListeners("warning");
process.on("warning", (warning) => {
  if (warning.name === "ExperimentalWarning") return;
  process.stderr.write(`warning: ${warning.name}: ${warning.message}\n`);
});
