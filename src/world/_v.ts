import { loadDefaultWorld, worldVocabulary, WorldError } from './schema.ts';
try { const w = loadDefaultWorld(); console.log('ok', w.names.train.length, w.names.heldout.length, worldVocabulary(w).length, w.warnings); }
catch (e) { if (e instanceof WorldError) console.log(e.message); else throw e; }
