"""Drawing: colours, basic drawing, the frame explorer's diagrams, paper figures."""
